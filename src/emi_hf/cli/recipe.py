"""`emi-hf recipe list | show NAME | run NAME|FILE`: named recipes of published EMI systems
(`emi_hf.recipes`, run by `emi_hf.recipes.run`)."""

from __future__ import annotations

import argparse

from ..errors import ExitCode

_EPILOG = ("recipes are YAML files of flat keys (`emi-hf recipe show NAME`); --set KEY=VALUE changes any key (YAML "
           "values: --set epochs=2 --set face_weights=null --set parts=[visual,audio]). Exit codes of run: 0 "
           "submission written and valid; 5 written but invalid; 2 a known error (unknown key, missing model, data).")


def cmd_recipe_list(args) -> int:
    from ..recipes import recipe_table

    for row in recipe_table():
        score = "n/a" if row["published_score"] is None else f"{row['published_score']:.4f} {row['published_split']}"
        print(f"{row['name']}\n  {row['title']}\n  source     {row['source']}\n  published  {score}\n"
              f"  GPU hours  {row['gpu_hours'] or 'n/a'}\n  downloads  " + "\n             ".join(row["downloads"]))
    return ExitCode.OK


def cmd_recipe_show(args) -> int:
    from ..recipes import format_recipe, load_recipe, parse_overrides

    overrides = parse_overrides(args.set)
    print(format_recipe(load_recipe(args.recipe, overrides), overrides))
    return ExitCode.OK


def cmd_recipe_run(args) -> int:
    from ..recipes.run import run_recipe
    from ..recipes import load_recipe

    summary = run_recipe(load_recipe(args.recipe, args.set), args.data_dir, args.output_dir)
    return ExitCode.INVALID if summary["submission"]["problems"] else ExitCode.OK


def add_recipe_parser(sub) -> None:
    """Registers `emi-hf recipe` on the subparsers `sub` of the main parser."""
    p = sub.add_parser("recipe", help="named recipes of published EMI systems: list, show, run",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="recipe_command", required=True)
    listing = actions.add_parser("list", help="the recipes: source, published score, downloads, GPU hours")
    listing.set_defaults(func=cmd_recipe_list)
    show = actions.add_parser("show", help="every key of a recipe, as its file names them")
    show.add_argument("recipe", help="a recipe name (emi-hf recipe list) or a YAML file")
    show.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a key (repeatable)")
    show.set_defaults(func=cmd_recipe_show)
    run = actions.add_parser("run", help="extract, train each part, fuse, score validation, refit, write and verify "
                                         "OUT/submission.csv", epilog=_EPILOG)
    run.add_argument("recipe", help="a recipe name (emi-hf recipe list) or a YAML file")
    run.add_argument("--data-dir", required=True, help="a Hume-Vidmimic2 folder (train, validation and test clips)")
    run.add_argument("--output-dir", required=True, help="features, runs, submission.csv, recipe_results.json")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a key (repeatable)")
    run.set_defaults(func=cmd_recipe_run)
