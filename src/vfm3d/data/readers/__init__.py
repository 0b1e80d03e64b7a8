"""One module per dataset layout; `vfm3d.data.read` picks the reader by kind."""
