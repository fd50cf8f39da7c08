"""Which ONNX operators the TensorRT ONNX parser accepts, as data.

Source: onnx/onnx-tensorrt ``docs/operators.md``, the matrix of the TensorRT
10.15 release ("TensorRT 10.15 supports operators in the inclusive range of
opset 9 to opset 24"), the newest published matrix found when this was written;
TensorRT 10.16 and 11.x parse the same opset range (docs/design.md section 3).
Transcribed by hand; update both sets together when a newer matrix adds rows.

Operators listed in neither set (newer ONNX operators, custom domains) are
treated as unsupported: the parser would reject them without a plugin.
"""

from __future__ import annotations

__all__ = [
    "TRT_DOC_VERSION",
    "TRT_MIN_OPSET",
    "TRT_MAX_OPSET",
    "TRT_SUPPORTED_OPS",
    "TRT_UNSUPPORTED_OPS",
    "TRT_CONSTANT_AXES_OPS",
    "TRT_POOLING_OPS",
]

TRT_DOC_VERSION = "10.15"
TRT_MIN_OPSET = 9
TRT_MAX_OPSET = 24

# Rows marked "N" in the matrix.
TRT_UNSUPPORTED_OPS: frozenset[str] = frozenset(
    {
        "AffineGrid",
        "Bernoulli",
        "BitShift",
        "BitwiseAnd",
        "BitwiseNot",
        "BitwiseOr",
        "BitwiseXor",
        "CenterCropPad",
        "Col2Im",
        "Compress",
        "ConcatFromSequence",
        "ConvInteger",
        "DFT",
        "Det",
        "DynamicQuantizeLinear",
        "ImageDecoder",
        "MatMulInteger",
        "MaxRoiPool",
        "MaxUnpool",
        "MelWeightMatrix",
        "Multinomial",
        "NegativeLogLikelihoodLoss",
        "Optional",
        "OptionalGetElement",
        "OptionalHasElement",
        "QLinearConv",
        "QLinearMatMul",
        "RegexFullMatch",
        "SequenceAt",
        "SequenceConstruct",
        "SequenceEmpty",
        "SequenceErase",
        "SequenceInsert",
        "SequenceLength",
        "SequenceMap",
        "SoftmaxCrossEntropyLoss",
        "SplitToSequence",
        "StringConcat",
        "StringNormalizer",
        "StringSplit",
        "TfIdfVectorizer",
        "Unique",
    }
)

# Rows marked "Y" in the matrix (restrictions are checked separately where they concern this model).
TRT_SUPPORTED_OPS: frozenset[str] = frozenset(
    {
        "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
        "Attention", "AveragePool", "BatchNormalization", "BlackmanWindow", "Cast", "CastLike", "Ceil",
        "Celu", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh",
        "CumSum", "DeformConv", "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu",
        "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather", "GatherElements",
        "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater",
        "GreaterOrEqual", "GridSample", "GroupNormalization", "GRU", "HammingWindow", "HannWindow",
        "HardSigmoid", "HardSwish", "Hardmax", "Identity", "If", "ImageScaler", "InstanceNormalization",
        "IsInf", "IsNaN", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax",
        "Loop", "LRN", "LSTM", "LpNormalization", "LpPool", "MatMul", "Max", "MaxPool", "Mean",
        "MeanVarianceNormalization", "Min", "Mish", "Mod", "Mul", "Neg", "NonMaxSuppression", "NonZero",
        "Not", "OneHot", "Or", "Pad", "ParametricSoftplus", "Pow", "PRelu", "QuantizeLinear",
        "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range", "Reciprocal",
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
        "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize", "ReverseSequence",
        "RMSNormalization", "RNN", "RoiAlign", "RotaryEmbedding", "Round", "STFT", "ScaledTanh", "Scan",
        "Scatter", "ScatterElements", "ScatterND", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin",
        "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt",
        "Squeeze", "Sub", "Sum", "Tan", "Tanh", "TensorScatter", "ThresholdedRelu", "Tile", "TopK",
        "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
    }
)  # fmt: skip

# Operators whose ``axes`` input (opset 18+ for the Reduce* family, 13+ for
# Squeeze/Unsqueeze) the parser needs as a build-time constant.
TRT_CONSTANT_AXES_OPS: frozenset[str] = frozenset(
    {
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
        "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Squeeze", "Unsqueeze",
    }
)  # fmt: skip

# Pooling operators whose ``dilations`` must be empty or all ones.
TRT_POOLING_OPS: frozenset[str] = frozenset({"AveragePool", "MaxPool", "LpPool"})
