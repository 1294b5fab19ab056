//! Unit tests of the server half.
