from workers.data import build
from workers.kit import main

main(build, prog="python -m workers.data")
