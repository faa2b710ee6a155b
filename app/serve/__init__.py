"""`serve`: a hub over a folder of NAME.zip packages (for demos, tests and LAN mirrors), and the
generator of realistic sample datasets for the demo and the benchmarks.

May import: app.core and app.package (serve lists packages with the product's own ZIP reader).
"""
