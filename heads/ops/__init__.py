"""Operations the heads share: box arithmetic and coding, matching, fg/bg sampling, NMS,
losses, and the structures passed between stages."""
