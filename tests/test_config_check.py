"""config_check.check_group_choices: a config group option with no conf file is one line, before Hydra composes."""

import pytest

from reasoning_sae.config_check import check_group_choices
from reasoning_sae.errors import UserError


@pytest.mark.parametrize("overrides", [
    [], ["model=smollm2-135m-instruct"], ["experiment=paper", "sae=paper"], ["model=a,b"], ["model.layer=3"], ["+model=x"],
    ["hydra.run.dir=x"], ["nonexistent_group=x"], ["model="],
], ids=range(9))
def test_existing_options_sweeps_keys_and_unknown_groups_pass(overrides):
    check_group_choices(overrides)


def test_a_missing_option_names_the_files_there():
    expected = r"^unknown model 'smollm3': use one of .*, smollm2-135m-instruct \(files in conf/model/\)$"
    with pytest.raises(UserError, match=expected):
        check_group_choices(["data.context_size=8", "model=smollm3"])
