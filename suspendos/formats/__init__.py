"""Every binary format of suspendos, declared once with construct.

One module per format. The C side never declares these layouts: it includes a header that
`suspendos.formats.cheader` generates from the declarations here, and a test compiles a
probe proving both sides agree byte for byte.
"""
