"""The two networks of a run: the student, built (:mod:`.students`), and the teacher, loaded (:mod:`.teachers`)."""
