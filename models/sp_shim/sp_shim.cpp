// placeholder: the sentencepiece C shim is being written
