"""`python -m android_ios_bench.ios`: absl flags -> `finish_lut` (merge an iPhone's LUTs, fit the correction)."""

from __future__ import annotations

from absl import flags


def main(argv):
    """Merges the --lut files into --lut-out with a fitted correction and prints what was fitted."""
    del argv
    from android_ios_bench.ios import finish_lut

    F = flags.FLAGS
    doc = finish_lut(F.lut, F["lut-out"].value, overwrite=F.overwrite)
    refs = doc.get("reference_models", [])
    print(f"wrote {F['lut-out'].value}: {len(doc['entries'])} entries, {len(refs)} reference models "
          f"({doc['device']['name']}, {doc['runtime']['name']})")
    fit = doc.get("correction")
    if fit:
        print(f"correction: {fit['form']} on {fit['statistic']}, coefficients {fit['coefficients']}; leave-one-out "
              f"|error| mean {fit['loo_mean_abs_pct']} %, max {fit['loo_max_abs_pct']} %")
    else:
        print("no correction fitted: it needs every unit the reference models use and more reference models than "
              "coefficients (measure the whole manifest, reference models included)")


def define_flags():
    """Defines this tool's flags (called by `run`, so importing the module defines none)."""
    flags.DEFINE_multi_string("lut", None, "LUT written by efbench or the EFBench app (repeat to merge partial LUTs "
                                           "of one device)", required=True)
    flags.DEFINE_string("lut-out", None, "the finished LUT (merged, with its correction)", required=True)
    flags.DEFINE_bool("overwrite", False, "replace --lut-out if it exists (e.g. finish a LUT in place)")


def run():
    """Entry point of `python -m android_ios_bench.ios`."""
    from android_ios_bench.lut import LUTError
    from ef_keras.cli import run as run_cli

    define_flags()
    run_cli(main, user_errors=(LUTError,))


if __name__ == "__main__":
    run()
