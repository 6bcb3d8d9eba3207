from workers.kit import main
from workers.text import build

main(build, prog="python -m workers.text")
