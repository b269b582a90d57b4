from tlcli.cli import run

run()
