# The one floating type of every fastnn kernel: float32 and float64 builds of each
# kernel come from this single definition.
ctypedef fused real:
    float
    double
