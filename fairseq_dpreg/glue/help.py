"""Shows the --dpreg-* flags in ``fairseq-train --help``.

fairseq 0.12 prints --help in its first parsing stage, before it adds any optimizer's own flags (so --help
never lists --adam-betas either). For runs that ask for --help, and only for those, the plugin adds its flags
as an argument group to fairseq's parser at the moment the help is printed. Every other run is untouched: the
dpreg_* optimizer adds the flags in fairseq's second parsing stage as usual.
"""
import argparse
import sys

from fairseq.dataclass.utils import gen_parser_from_dataclass

from .config import DpregConfig

GROUP = "fairseq-dpreg (use with --optimizer dpreg_<name> and a *_dpreg task)"


def _with_dpreg_flags(print_help):
    def wrapper(parser, *args, **kwargs):
        is_fairseq = any("--optimizer" in a.option_strings for a in parser._actions)
        has_ours = any("--dpreg-lambda" in a.option_strings for a in parser._actions)
        if is_fairseq and not has_ours:
            gen_parser_from_dataclass(parser.add_argument_group(GROUP), DpregConfig())
        return print_help(parser, *args, **kwargs)
    wrapper._dpreg = True
    return wrapper


if {"-h", "--help"} & set(sys.argv[1:]) and not getattr(argparse.ArgumentParser.print_help, "_dpreg", False):
    argparse.ArgumentParser.print_help = _with_dpreg_flags(argparse.ArgumentParser.print_help)
