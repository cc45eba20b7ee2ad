//! Shared helpers for intentkit's benchmarks. Every benchmark prints a baseline measured in the
//! same run and the ratio to it, because the machines are shared and absolute numbers drift.
