// The settings page's only script (served by the bridge; the page's CSP allows no inline code).
// Shows the credential fields of the chosen vendor only, and marks the form busy while it is
// being sent. Without it the page still works: every vendor's fields are shown.
(function () {
  'use strict';
  var form = document.getElementById('settings-form');
  if (!form) {
    return;
  }
  var select = document.getElementById('mapping');
  function showChosenVendor() {
    var chosen = select ? select.value : '';
    var sets = document.querySelectorAll('fieldset.vendor');
    for (var i = 0; i < sets.length; i++) {
      sets[i].hidden = sets[i].getAttribute('data-mapping') !== chosen;
    }
  }
  if (select) {
    select.addEventListener('change', showChosenVendor);
  }
  showChosenVendor();
  form.addEventListener('submit', function () {
    // Not `disabled`: a disabled submit button's name=value would not be sent.
    form.classList.add('busy');
    form.setAttribute('aria-busy', 'true');
  });
})();
