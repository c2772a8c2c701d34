"""Shell completion generated from the parser by shtab: `suspendos completion bash|zsh|tcsh`
prints it, and the wheel installs the bash one (share/bash-completion/completions/suspendos,
made by `python -m suspendos.clidocs`)."""
SHELLS = ("bash", "zsh", "tcsh")
# Options and positionals whose value is a folder, by metavar; those that name files are the
# ones cli.py's path tables list (the same tables its path checks use).
FOLDER_METAVARS = ("DIR", "FOLDER")


def mark_paths(parser):
    """Tell shtab which values are files or folders, so the shell offers paths for them."""
    import shtab
    from .cli import INPUT_PATHS, OUTPUT_PATHS
    from .parsertree import own_actions, walk
    for command in walk(parser):
        for action in own_actions(command.parser):
            if action.metavar in FOLDER_METAVARS:
                action.complete = shtab.DIRECTORY
            elif action.dest in INPUT_PATHS or action.dest in OUTPUT_PATHS:
                action.complete = shtab.FILE
    return parser


def script(shell):
    import shtab
    from .cli import parser
    return shtab.complete(mark_paths(parser()), shell)


def cmd_completion(a):
    print(script(a.shell), end="")
