"""Comparing rate-distortion curves: BD-rate and BD-PSNR, tables and plots."""
