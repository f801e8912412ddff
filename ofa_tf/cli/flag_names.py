"""One flag name per idea across the command-line programs, and the same name in the JSON
they write: the table of allowed names.

Each idea that several programs share has one name (two where one value and several
values are two ideas: `--arch` / `--archs`, `--output` / `--output_dir`), the pattern of
names that would also mean it, and why the name was chosen. tests/test_flag_names.py checks
every program's own flags against `IDEAS`: a flag whose name matches an idea's pattern must
be one of its names, and of one of its kinds.

Renamed in 0.1.0, without deprecated aliases (absl's `DEFINE_alias` cannot say that a name
is old, and a 0.1 library has few users to keep them for): `--resolution` (ofa-profile,
ofa-search), `--resolutions` (ofa-profile, ofa-build-lut) and `--lut_resolutions`
(ofa-build-lut) are `--image_size`; `--max_eval_images` (ofa-export) is `--eval_images`;
the export metadata's `bn_recalibration_images` is `bn_calibration_images`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Idea:
    names: tuple[str, ...]  # the allowed flag names
    kinds: tuple[str, ...]  # what their values are: integer, list of integers, string, list, ...
    means: str  # regular expression: a flag name it matches (re.search) means this idea
    why: str


IDEAS = {
    "input size": Idea(
        ("image_size",), ("integer", "list of integers"), r"resolution|image_?size|img_?size|input_?size|^size$",
        "RunConfig's setting (config.json) and ofa-train's flag. One size where a program takes one "
        "(ofa-import-ofa --specialized), a comma-separated list where it takes several: the sizes a supernet "
        "trains at (ofa-train), or a space's sizes, some of a run's with --model_dir (ofa-profile, where one size "
        "is also the subnet's; ofa-build-lut: a table each; ofa-search: where it searches). `resolution` stays the "
        "library's word for an arch's input size."),
    "evaluation images": Idea(
        ("eval_images",), ("integer",), r"eval\w*_images|images_\w*eval|max_\w*images",
        "How many held-out images accuracy is measured on. Each program keeps its default: 1000 where hundreds "
        "of subnets are measured (ofa-search, ofa-train-predictor), all where a few are (ofa-evaluate, "
        "ofa-export)."),
    "BN calibration images": Idea(
        ("bn_calibration_images",), ("integer",), r"(bn|calibration|recalibration)\w*_images",
        "RunConfig's setting (config.json), so a tool's flag overrides the run's value under the same name; "
        "ofa-export's metadata records it under that name too."),
    "output file": Idea(
        ("output",), ("string",), r"^out(put)?(_?(file|path))?$",
        "One file a program writes (a JSON result, a table, a model). Never a folder: that is --output_dir."),
    "output folder": Idea(
        ("output_dir",), ("string",), r"^out(put)?_?(dir|directory|folder)$",
        "A folder of files a program writes (search results, a predictor, Pareto reports)."),
    "run directory": Idea(
        ("model_dir",), ("string",), r"^run_?(dir|directory|path)$|^model_?(dir|directory|path)$",
        "The run directory ofa-train writes and every other tool reads (config.json, checkpoints). Every "
        "program that takes a search space takes --model_dir to read the space from a run instead."),
    "one subnet": Idea(
        ("arch",), ("string",), r"^arch(_?(spec|file|path|json))?$|^subnet$",
        "One subnet: max, min, random, a JSON object or file. A JSON object holds commas, so a single arch cannot "
        "share a comma-separated list flag with several."),
    "several subnets": Idea(
        ("archs",), ("list",), r"^archs(_?(specs|files|paths))?$|^subnets$",
        "Several subnets (comma-separated max, min, random or files): the plural of --arch."),
    "search space": Idea(
        ("space", "width_mult", "num_classes"), ("string", "float", "integer"),
        r"search_?space|^space_?(name|file)$|width_?mult(iplier)?$|^(n|num|number)_?classes$|^classes$",
        "RunConfig's names for a run's space, width and (ofa-profile, ofa-build-lut) class count."),
}
