"""``python -m seg2sat.realsize DIR`` (the README's command): the builder is :mod:`seg2sat.testing.realsize`."""
from seg2sat.testing.realsize import main

if __name__ == "__main__":
    main()
