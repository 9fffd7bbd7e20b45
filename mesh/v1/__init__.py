"""Generated from proto/mesh/v1 by `make proto`; do not edit."""
