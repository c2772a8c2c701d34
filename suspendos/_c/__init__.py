"""Installed home of the C and assembly sources (builder/, drivers/, plugins/, qemu-boot/)."""
