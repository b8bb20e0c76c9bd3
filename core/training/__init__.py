"""srcompress.training"""
