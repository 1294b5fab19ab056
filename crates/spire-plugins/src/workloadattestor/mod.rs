//! WorkloadAttestor plugins.

pub mod unix;
