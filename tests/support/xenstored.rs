//! (in progress)
#![allow(dead_code)]
