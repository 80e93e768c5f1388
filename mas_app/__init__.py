"""The application core: the one generation pipeline (pipeline.py) that the command line
(mas_cli) and the Blender add-on (blender_addon) both run."""
