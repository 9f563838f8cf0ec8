//! The agent protocol (JSON lines over stdio), versioned; both the agent and the harness use these types.
