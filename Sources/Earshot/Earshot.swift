// The umbrella library: `import Earshot` gives an app every Earshot library.
@_exported import Audio
@_exported import CLAP
@_exported import Engine
@_exported import Inference
@_exported import Models
@_exported import NN
@_exported import Text
@_exported import Training
