"""The napari face of napari-dgno: the deblur widget, TIFF reader/writer and sample data.

This is the only part of the package that imports napari or Qt. Everything here is a thin layer
over the core (:mod:`napari_dgno.engine`, :mod:`napari_dgno.checkpoints`, :mod:`napari_dgno.io`,
:mod:`napari_dgno.synthetic`): it reads viewer state on the main thread, hands plain values to the
core in a worker thread, and turns the results back into layers.
"""
