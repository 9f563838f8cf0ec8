//! The CPU backend (F32 now; 8-bit with the quantization issue).
