"""suspendos(1), generated from the parser by argparse-manpage: its SYNOPSIS is the README's
(suspendos/synopsis.py), then every command with its options and their help. The wheel
installs it as share/man/man1/suspendos.1 (`python -m suspendos.clidocs` writes it)."""
SHORT_DESCRIPTION = "hibernate a machine with a freestanding module that writes its RAM to disk"


def _roff(text):
    """Text as roff shows it literally: backslashes and hyphens escaped, no line starting
    with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line
                     for line in text.splitlines())


def man_page():
    from argparse_manpage.manpage import Manpage

    from . import __version__
    from .cli import parser
    from .synopsis import synopsis
    p = parser()
    page = Manpage(p, _data={"project_name": "suspendos", "version": __version__,
                             "manual_title": "suspendos manual",
                             "description": SHORT_DESCRIPTION})
    # No date: the committed page must equal a fresh generation on any day.
    page.date = ""
    page.add_section("synopsis", "=", ".nf\n" + _roff(synopsis(p)) + "\n.fi")
    return str(page)
