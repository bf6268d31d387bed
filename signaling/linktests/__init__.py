"""Link tests of connection points: start and authorise them, turn figures into a verdict, keep each point's history."""
