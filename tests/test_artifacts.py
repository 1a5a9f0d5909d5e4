from reasoning_sae import artifacts


def test_git_commit_falls_back_to_the_image_build_record(monkeypatch, tmp_path):
    assert artifacts.git_commit()  # this checkout
    monkeypatch.setattr(artifacts, "REPO_ROOT", tmp_path)  # no .git, as inside the Docker image
    monkeypatch.setenv("REASONING_SAE_GIT_COMMIT", "abc123")
    assert artifacts.git_commit() == "abc123"
    monkeypatch.delenv("REASONING_SAE_GIT_COMMIT")
    assert artifacts.git_commit() is None
