//! Shared test support lives in it/support.
