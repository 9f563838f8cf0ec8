//! The model zoo: the paper's networks with seeded weights and EfficientNet-Lite0 with real weights.
