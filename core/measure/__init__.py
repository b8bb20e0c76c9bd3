"""srcompress.measure"""
