"""Plugins and splash themes (docs/PLUGINS.md).

    keys     ed25519 signing keys and trust folders (cryptography)
    package  the signed package (.sop): make, parse, sign, verify, approve
    theme    splash pictures converted with Pillow, LZ4 bands (python-lz4)
    sdk      `plugin new` / `plugin build`, and objects and assets for a payload
    link     each plugin linked alone in the reserved region, its page-table view
    render   the progress plugin's frames computed in Python (tests, `plugin preview`)
    font     the progress plugin's digits, declared once
    cli      `suspendos plugin ...` and the --plugin options
"""
