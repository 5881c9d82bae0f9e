"""Retires a rotated device's old certificate once its new one has connected, or its grace is over."""
