"""Tables, plots, point clouds and the HTML report of probe sweeps."""
