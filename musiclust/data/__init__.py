"""Where tracks come from: the embedded default set (rendered from the music21 corpus) and user collections."""
