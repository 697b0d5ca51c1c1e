"""Example feeds the demo submits, shipped as package data so `feedsift demo` works from a wheel."""
