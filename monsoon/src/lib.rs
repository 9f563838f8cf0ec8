//! Monsoon power monitor driver (filled by the monsoon issue).
