"""Features: decode audio, log-mel and MFCC statistics, lyrics TF-IDF (array in, array out)."""
