"""The `holdmon` command line (typer + rich). The entry point is `sensor.cli.main:app`.

Adding commands from another module: give the module a function

    def register(app: typer.Typer) -> None:
        @app.command()
        def live(...): ...

and add one line at the bottom of `sensor/cli/main.py`:

    register_module("sensor.cli.live_cmds")

Commands raise `sensor.errors.HoldmonError` (or a subclass) for anything the user caused; the app turns
it into one line on stderr, `holdmon: error: <message>`, and exit code 2. Exit code 1 is for a negative
verdict (e.g. an unstable session), 0 for success. Use `sensor.cli.main.stderr` (a rich Console on
stderr) for warnings so that stdout stays clean for `--json` output.
"""
