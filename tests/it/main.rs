//! Integration tests, built as one binary: they drive `mediabuild` as a user
//! would and judge its outputs with independent tools.

mod support;

mod build_wim;
mod check;
mod plan;
mod readme;
