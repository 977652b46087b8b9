from patchlab.cli import run

run()
