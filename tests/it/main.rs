//! Integration tests, built as one binary: they drive `mediabuild` as a user
//! would and judge its outputs with independent tools.

mod support;
/// The disk tool helpers, shared with the engines' unit tests.
use mediabuild_fat32::testutil;

mod build_disk;
mod build_wim;
mod cache;
mod check;
mod cli_docs;
mod compose;
mod inspect;
mod layers;
mod plan;
mod progress_json;
mod readme;
mod safety;
mod schema_init;
mod security;
mod site;
mod sources;
mod writers;
