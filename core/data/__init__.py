"""srcompress.data"""
