"""Built-in model plugins: F2SRGAN, Light F2SRGAN, bicubic and the surveyed baselines."""
