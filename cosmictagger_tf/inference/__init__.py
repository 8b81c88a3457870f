"""Running a trained tagger over larcv3 files.

Modules, one job each:
    models          load a model from a training run folder or an exported model
    voxels          map scores on the training-resolution grid back to the input voxels
    predict         batched prediction over the entries of a file
    output_file     write predictions as sparse2d producers of a larcv3 file
    export_formats  write and check the ``.keras``, SavedModel and ONNX exports
    command_line    logging and exit handling shared by the commands

The package imports nothing at load time, so modules that need no TensorFlow stay light.
"""
