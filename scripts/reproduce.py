"""``samt-reproduce`` as a script, for a checkout without the console script:
``python scripts/reproduce.py EXPERIMENT ...`` (the code: ``samt/tune/reproduce.py``)."""

from samt.tune.reproduce import main

if __name__ == "__main__":
    main()
