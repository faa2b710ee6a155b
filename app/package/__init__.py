"""The ZIP package: a compact central-directory reader, the checks made before anything is written
(safe paths, overlaps, sizes, ZIP bombs), extraction into a staging tree with CRCs checked, and the
overlay or mirror install.

May import: app.core only.
"""
