"""Networks: Darknet-19 and the YOLOv2 / YOLO9000 detector."""

STRIDE = 32  # Darknet-19's output stride: input sides are multiples of it, the output grid is input / STRIDE
