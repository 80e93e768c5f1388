"""The `mas` command line: the top floor, over the pipeline (mas_app), the engine, retarget and,
for FBX and glTF files, the Blender add-on's scene code (through Blender's bpy module)."""
