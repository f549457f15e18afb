//! Integration tests of isoread, built as one binary.
//!
//! Images come from two places, both made at test time: the authoring tools (`genisoimage`,
//! `xorriso`) over a source tree shaped like Windows install media, with `7z` as an independent
//! reader; and small images written byte by byte here, for structures the tools will not produce
//! quickly (multi-extent files, several UDF allocation descriptors) and for damage. When a tool is
//! missing its tests are skipped with a note, except under CI (`CI` set), where that is a failure.

mod big;
mod build;
mod corrupt;
mod fixture;
mod handmade;
mod tools;
