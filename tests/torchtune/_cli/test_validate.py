import textwrap


def test_validate_good_config(run_tune, tmp_path):
    # Standard-library components keep the subprocess free of the torch import; configs of
    # torchtune and torch components are covered in tests/torchtune/config/test_validate.py.
    path = tmp_path / "good.yaml"
    path.write_text(
        textwrap.dedent(
            """
            output_dir: /tmp/out
            ratio:
              _component_: fractions.Fraction
              numerator: 1
              denominator: 3
            logger:
              _component_: types.SimpleNamespace
              log_dir: ${output_dir}/logs
            batch_size: 2
            """
        )
    )
    out = run_tune("validate", str(path))
    assert out.returncode == 0, out.stderr
    assert "Config is well-formed!" in out.stdout


def test_validate_broken_config_lists_all_problems(run_tune, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(
        textwrap.dedent(
            """
            ratio:
              _component_: fractions.Fractoin
            settings:
              half:
                _component_: fractions.Fraction
                numeratr: 1
            """
        )
    )
    out = run_tune("validate", str(path))
    assert out.returncode == 1
    assert "2 problems" in out.stderr
    assert "config key 'ratio'" in out.stderr and "did you mean 'Fraction'?" in out.stderr
    assert "config key 'settings.half.numeratr'" in out.stderr and "did you mean 'numerator'?" in out.stderr
    assert "Traceback" not in out.stderr


def test_validate_missing_file(run_tune, tmp_path):
    out = run_tune("validate", str(tmp_path / "nope.yaml"))
    assert out.returncode == 1
    assert "neither a file nor a built-in config" in out.stderr
